import sys

from coatnet_edge.cli.app import main

sys.exit(main())
