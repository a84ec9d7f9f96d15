"""reprocessor."""
