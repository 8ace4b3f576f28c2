"""The command line: argv to a command, and the only place errors become exit codes.

`main` dispatches (run or start, check, the control verbs), `run` parses the run
command's options and starts the master, `check` validates and prints. The top of the
import graph: nothing imports `cli`.
"""
