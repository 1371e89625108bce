"""Model rollouts on AWS: an approved model version becomes a new Lambda version of every
function that serves the model, shifted onto its `live` alias by CodeDeploy (`rollout`), and
the deployment's end is recorded in the registry and announced (`finish`)."""
