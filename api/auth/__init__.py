"""Authentication: who each request and socket is (``Authenticator``), and what it may do (``guards``)."""
