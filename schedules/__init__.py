"""Ternary tensor-expression kernels per target family (installed as `edgeclip.schedules`)."""
