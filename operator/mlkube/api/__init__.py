"""The base layer: API names, typed specs and conditions shared by the controller and runtime."""
