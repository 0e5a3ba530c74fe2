"""Device bundles: the tar format (light, no torch/tvm) and, later, building and running them."""
