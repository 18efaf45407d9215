"""QGIS as the engine's input and output: the data-provider reader, the feature-sink adapter, layers as files,
styles, remembered weights and areas."""
