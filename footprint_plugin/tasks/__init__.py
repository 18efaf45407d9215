"""QgsTasks: the engine run in the background; the project and the GUI are touched only in ``finished()``."""
