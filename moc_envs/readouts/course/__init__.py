"""Readouts of a scrolling course: the objects a game keeps in a fixed number of slots that shift
as the course scrolls (Skiing's ``object_y_0..6``), read from the frame itself.

:mod:`moc_envs.readouts.course.slots` holds the ``course`` kind (registered in
:data:`moc_envs.readouts.registry.READOUT_KINDS`).
"""

from moc_envs.readouts.course.slots import CourseObject, CourseReadout, find_course_objects

__all__ = ["CourseObject", "CourseReadout", "find_course_objects"]
