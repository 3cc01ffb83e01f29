"""How good what you got is: agreement between a compressed model and the teacher, the realism of a synthetic set, image grids."""
