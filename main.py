"""Entry point: `python main.py <fit|validate|test|predict> -c configs/...`."""

from bob.cli import run

if __name__ == "__main__":
    run()
