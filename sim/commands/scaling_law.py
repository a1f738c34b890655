"""Placeholder for `gpusim scaling-law` while it is being written."""
from workloads.errors import InputError

NAME = "scaling-law"
HELP = "(scaling-law: being written)"


def add_arguments(parser):
    pass


def run(args):
    raise InputError("'scaling-law' is not available yet", "gpusim scaling-law", "use another command")
