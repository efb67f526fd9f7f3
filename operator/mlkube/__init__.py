"""mlkube: train, validate, serve, monitor and retrain scikit-learn models on Kubernetes."""

__version__ = "0.1.0"
