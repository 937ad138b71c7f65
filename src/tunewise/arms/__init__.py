"""Ways of doing the task, one file each; every arm writes predictions for the same frozen test split."""
