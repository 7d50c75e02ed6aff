"""mate.data: datasets, motion features and the synthetic benchmark."""
