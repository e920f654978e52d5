"""Fitting the readouts of a scrolling course (:mod:`moc_envs.readouts.course`) from play, RAM as
the teacher: :mod:`trainers.readouts.course.fit_course`."""
