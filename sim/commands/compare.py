"""Placeholder for `gpusim compare` while it is being written."""
from workloads.errors import InputError

NAME = "compare"
HELP = "(compare: being written)"


def add_arguments(parser):
    pass


def run(args):
    raise InputError("'compare' is not available yet", "gpusim compare", "use another command")
