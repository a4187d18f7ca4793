"""mnmon's settings: the YAML file and its safe reading."""
