"""The service's web pages: templates, static files and the messages they show (Korean, English)."""
