"""Dialogs and actions: they collect the user's choices and start tasks; no engine work here."""
