"""The Processing provider and its algorithms (extract, fine-tune, evaluate), also run by ``qgis_process``."""
