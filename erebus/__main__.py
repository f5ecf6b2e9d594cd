"""python -m erebus"""

from .cli import run

run()
