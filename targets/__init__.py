"""Board descriptions as TOML data (installed as `edgeclip.targets`)."""
