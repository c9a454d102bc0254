"""The helpers behind the three stage scripts, one job per module (see README, "How the code is laid out")."""
