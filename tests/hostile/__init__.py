"""The hostile-upload corpus: files nobody should be able to slip past the upload form or the worker."""
