"""The county's reference data, shared by every service: townships, villages and grids with
their polygons, departments, units and staff, the matter catalogue and claims, the whistle rules;
the geometry that places a point in a grid and the segmentation that finds catalogue keywords.

It sits below the services and above ``contracts``: it imports no service."""
