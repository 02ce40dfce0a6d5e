"""The frozen no-op: built like ccflux (build/build --noop), it measures the bundle's bare start-up."""
