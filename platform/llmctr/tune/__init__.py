"""tune stage (see the open issues); nothing here yet."""
