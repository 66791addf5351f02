"""Pure rules: no aiogram, no storage. Safe to import from anywhere (the server-side export
too)."""
