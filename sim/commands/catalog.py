"""Placeholder for `gpusim catalog` while it is being written."""
from workloads.errors import InputError

NAME = "catalog"
HELP = "(catalog: being written)"


def add_arguments(parser):
    pass


def run(args):
    raise InputError("'catalog' is not available yet", "gpusim catalog", "use another command")
