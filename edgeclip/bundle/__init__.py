"""Device bundles: building them for a board (`build`, with `model_info` from the model's family)
and using them on this machine (`local`); the tar format itself is `edgeclip.formats.bundle`."""
