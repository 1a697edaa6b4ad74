"""Command lines parsed as a script's users give them, in a child process that has imported the
script (its flags defined in absl's FLAGS) and runs nothing of it."""

from absl import flags


def parse_lines(script, lines):
    """{line: None, or absl's error} of each command `line` (flags separated by spaces), parsed
    in turn against FLAGS, reset before each."""
    results = {}
    for line in lines:
        flags.FLAGS.unparse_flags()
        try:
            flags.FLAGS([script] + line.split())
            results[line] = None
        except flags.Error as e:
            results[line] = str(e)
    return results
