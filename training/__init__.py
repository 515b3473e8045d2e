"""Train, evaluate and export the FER2013 emotion classifier (TensorFlow/Keras; never imported by api/ or worker/)."""
