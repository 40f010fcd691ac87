"""Preparing: the catalog of what is served, and the datasets the daemon
makes before serving them (SQL queries, databases, owner transforms)."""
