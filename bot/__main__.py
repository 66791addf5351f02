import sys

from bot.cli import main

# Guarded: a child process (multiprocessing's spawn) imports the main module again.
if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
