"""Placeholder for `gpusim train-estimate` while it is being written."""
from workloads.errors import InputError

NAME = "train-estimate"
HELP = "(train-estimate: being written)"


def add_arguments(parser):
    pass


def run(args):
    raise InputError("'train-estimate' is not available yet", "gpusim train-estimate", "use another command")
