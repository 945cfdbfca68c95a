"""EMR adapters: one package per EMR, all behind `adapters.base.EMRAdapter`."""
