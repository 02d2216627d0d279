"""Training: the train and distill verbs, one loop (QAT uses it too), losses, resume state, torch data."""
