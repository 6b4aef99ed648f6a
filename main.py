"""Entry point: `python main.py <fit|validate|test|predict> -c configs/...`."""

from bob.cli import main

if __name__ == "__main__":
    main()
