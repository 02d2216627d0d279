"""Images in, arrays out: Pillow+NumPy preprocessing, image folders, the built-in dataset (torch-free)."""
