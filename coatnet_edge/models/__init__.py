"""CoAtNet family (paper topology + edge sizes), registry, checkpoints, size/compute profile."""
