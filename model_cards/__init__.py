"""The model-card templates (``<family>.md``), rendered by `hf_primaldual.hub.render_model_card`.

This folder is their source; pyproject.toml installs it as the package ``hf_primaldual.model_cards`` (this file
makes it one), so that importlib.resources finds the templates in a wheel and in an editable install.
"""
