"""The web approval inbox: `signoff web`."""
