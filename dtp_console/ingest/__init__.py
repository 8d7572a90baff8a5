"""The platform worker: the twins' own `dtp/#` data into the stores and the twin view."""
