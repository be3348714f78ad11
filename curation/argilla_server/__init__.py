"""Code that runs inside the argilla-server virtualenv: search-engine plugin and launcher."""
