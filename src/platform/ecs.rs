//! Amazon ECS: each revision is a task set of a service with the EXTERNAL deployment controller.
