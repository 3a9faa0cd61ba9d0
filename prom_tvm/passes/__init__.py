"""Relax passes that turn a QDQ graph into integer and add-only kernels."""
