"""Training: the student's loop (one cell or a group on shared batches) and evaluation."""
