"""Exports: what each cell holds (columns, times), the CSV and XLSX writers, and the files."""
