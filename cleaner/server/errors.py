"""The root of every error cleaner raises for a person to read (a bad file, a bad setting, a bad upload)."""


class CleanerError(Exception):
    """Something a user or an operator can fix; its message says what and how, in plain words."""
