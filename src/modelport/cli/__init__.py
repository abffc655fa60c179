"""The command line: parse flags, call the library function the tests also call, map errors to exit codes."""
