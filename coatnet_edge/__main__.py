import sys

from coatnet_edge.cli import main

sys.exit(main())
