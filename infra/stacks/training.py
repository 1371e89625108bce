"""`AibTraining`: one Step Functions state machine per trainable model, from the same pipeline
declaration `aib train` runs locally (`aibackend.training.pipeline`).

    Prepare (Pass: the run's S3 prefixes and job name)
      -> Train (SageMaker training job, RUN_JOB: the declared instance type and image)
      -> Evaluate (Lambda: holdout metrics and the gate's checks, numpy + onnxruntime)
      -> Gate (Choice on the verdict)
           approved -> Register (Lambda: registry, staging / first production) -> Succeeded
           rejected -> RecordRejection (the same Lambda: a rejected candidate) -> GateRejected
    any task's error -> Failed (Fail state carrying the error and its cause)

Training never shares infrastructure with inference: this stack has its own roles, log
groups, Lambda functions and code asset; it reads AibModels' bucket and registry only. Its
state machines are named `aib-training-<model>`, and the retraining trigger, deployed here
too, is granted `states:StartExecution` on them by ARN.

Data: the train channel is `s3://<model bucket>/training-data/<model>/` (CSV files with the
entry point's columns); each run writes under `training/<model>/`.
"""

from __future__ import annotations

import io
import tarfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import jsii
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_events as events
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_assets as s3_assets
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct, IConstruct

from aibackend.catalog import DEFAULT_BUS, PLATFORM_BUS, FunctionSpec
from aibackend.retraining import CONFIG_ENV, STATE_MACHINE_PREFIX, RetrainConfig
from aibackend.training.gate import GateConfig
from aibackend.training.pipeline import PipelineSpec
from infra.bundling import Platform
from infra.config import InfraConfig
from infra.constructs.alarms import FunctionAlarms, alarm_topic
from infra.constructs.keys import allow_eventbridge_dead_letters, platform_key
from infra.constructs.layers import Layers
from infra.constructs.service_function import FunctionSettings, ServiceFunction, SharedResources
from infra.constructs.storage import DataTables
from infra.nag import acknowledge, resource_finding
from infra.naming import pascal
from infra.stacks.services import _retention

#: The framework container (script mode) of `image = "framework"` (`framework_image`): AWS Deep
#: Learning Containers' PyTorch training image: Python 3.11 (what `aibackend` needs;
#: SageMaker's scikit-learn images are older), scikit-learn and the ONNX exporters come from
#: the source's requirements.txt.
FRAMEWORK_ACCOUNT = "763104351884"
FRAMEWORK_REPOSITORY = "pytorch-training"
FRAMEWORK_TAGS = {
    "cpu": "2.3.0-cpu-py311-ubuntu20.04-sagemaker",
    "gpu": "2.3.0-gpu-py311-cu121-ubuntu20.04-sagemaker",
}
#: What the framework container pip-installs before running the entry point.
TRAINING_REQUIREMENTS = (
    "scikit-learn>=1.4",
    "scipy>=1.11",
    "skl2onnx>=1.17",
    "onnx>=1.16",
    "protobuf<7",
    "onnxruntime>=1.18",
    "pydantic>=2.7",
)
TRAINING_DATA_PREFIX = "training-data"
RUNS_PREFIX = "training"
#: The Lambda steps' platform (same as the functions').
PLATFORM = Platform("python3.12", "arm64")


def framework_image(spec: PipelineSpec) -> str:
    """The training image URI: the declared one, or the framework container for the stack's
    region (CPU or GPU build by the instance type)."""
    if not spec.framework:
        return spec.image
    tag = FRAMEWORK_TAGS["gpu" if spec.gpu else "cpu"]
    return (
        f"{FRAMEWORK_ACCOUNT}.dkr.ecr.{cdk.Aws.REGION}.{cdk.Aws.URL_SUFFIX}/"
        f"{FRAMEWORK_REPOSITORY}:{tag}"
    )


def program_name(model: str) -> str:
    """The script-mode program of `model` inside the source archive."""
    return f"train_{model}.py"


def source_archive(package_dir: Path, pipelines: Mapping[str, PipelineSpec]) -> bytes:
    """`sourcedir.tar.gz` for script mode: `aibackend/`, a `train_<model>.py` per model that
    runs its entry point, and `requirements.txt`."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:

        def add_text(name: str, text: str) -> None:
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))

        tar.add(
            package_dir,
            arcname="aibackend",
            filter=lambda t: None if "__pycache__" in t.name else t,
        )
        for model, spec in sorted(pipelines.items()):
            add_text(
                program_name(model),
                f"import runpy\nrunpy.run_module({spec.entry_point!r}, run_name='__main__')\n",
            )
        add_text("requirements.txt", "\n".join(TRAINING_REQUIREMENTS) + "\n")
    return buf.getvalue()


@jsii.implements(cdk.ILocalBundling)
class _SourceArchive:
    def __init__(self, package_dir: Path, pipelines: Mapping[str, PipelineSpec]) -> None:
        self.package_dir = package_dir
        self.pipelines = pipelines

    def try_bundle(self, output_dir: str, *, image: cdk.DockerImage, **_: Any) -> bool:
        data = source_archive(self.package_dir, self.pipelines)
        (Path(output_dir) / "sourcedir.tar.gz").write_bytes(data)
        return True


class TrainingStack(cdk.Stack):
    """Attributes: `state_machines` (model -> sfn.StateMachine), `evaluate` and `register`
    (lambda_.Function), `job_role` (iam.Role SageMaker assumes)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        pipelines: Mapping[str, PipelineSpec],
        gates: Mapping[str, GateConfig],
        layers_dir: Path,
        model_bucket: s3.IBucket,
        registry_table: dynamodb.ITable,
        config: InfraConfig,
        bus: events.IEventBus,
        trigger: FunctionSpec | None = None,
        retrain: RetrainConfig | None = None,
        functions_dir: Path | None = None,
        **kwargs: Any,
    ) -> None:
        """`trigger`: the retraining trigger's declaration (`functions/retrain_trigger`), built
        here, beside what it starts, with `retrain` (its policies) and `functions_dir`."""
        super().__init__(scope, construct_id, **kwargs)
        self._retention = _retention(config.log_retention_days)
        models = sorted(pipelines)
        key_arn = model_bucket.encryption_key.key_arn if model_bucket.encryption_key else None
        self.model_key = (
            kms.Key.from_key_arn(
                self, "ModelKey", self._import(model_bucket, key_arn, "ModelKeyArn")
            )
            if key_arn
            else None
        )
        self.bucket = s3.Bucket.from_bucket_attributes(
            self,
            "ModelBucket",
            bucket_arn=self._import(model_bucket, model_bucket.bucket_arn, "ModelBucketArn"),
            bucket_name=self._import(model_bucket, model_bucket.bucket_name, "ModelBucketName"),
            encryption_key=self.model_key,
        )
        self.registry_table = dynamodb.Table.from_table_attributes(
            self,
            "RegistryTable",
            table_name=self._import(registry_table, registry_table.table_name, "RegistryTableName"),
        )
        source = s3_assets.Asset(
            self,
            "TrainingSource",
            path=str(layers_dir / "common"),
            exclude=["*", "!aibackend", "!aibackend/**", "**/__pycache__"],
            bundling=cdk.BundlingOptions(
                image=cdk.DockerImage.from_registry("public.ecr.aws/docker/library/python:3.12"),
                command=["bash", "-c", "tar czf /asset-output/sourcedir.tar.gz -C /asset-input ."],
                local=_SourceArchive(layers_dir / "common" / "aibackend", pipelines),
                output_type=cdk.BundlingOutput.SINGLE_FILE,
            ),
        )
        self.job_role = self._job_role(models, source)
        layers = Layers(self, "Layers", layers_dir=layers_dir)
        code = lambda_.Code.from_asset(
            str(layers_dir / "common"),
            exclude=["*", "!aibackend", "!aibackend/**", "**/__pycache__", "**/*.pyc"],
        )
        steps = Construct(self, "Steps")
        self.evaluate = self._step_function(steps, "Evaluate", "evaluate", code, layers)
        self.register = self._step_function(steps, "Register", "register", code, layers)
        self._grant_steps(models)
        self.state_machines = {
            model: self._state_machine(pipelines[model], gates[model], source) for model in models
        }
        for model, machine in self.state_machines.items():
            cdk.CfnOutput(self, f"StateMachine{pascal(model)}", value=machine.state_machine_arn)
        self.trigger: ServiceFunction | None = None
        if trigger is not None:
            assert retrain is not None and functions_dir is not None  # given with the trigger
            self.trigger = self._trigger(trigger, retrain, functions_dir, layers, bus, config)

    # --- the retraining trigger ---------------------------------------------------------------

    def _trigger(
        self,
        spec: FunctionSpec,
        retrain: RetrainConfig,
        functions_dir: Path,
        layers: Layers,
        bus: events.IEventBus,
        config: InfraConfig,
    ) -> ServiceFunction:
        """The trigger as every declared function is built (rules, failure queue, alarms),
        with its own key and `retrain-state` table, allowed to start these state machines
        and nothing else."""
        key = platform_key(
            self, "Key", purpose="training", description="retraining state and failure queue"
        )
        allow_eventbridge_dead_letters(key)
        tables = DataTables(self, "Tables", names=sorted(spec.resources.tables), key=key).tables
        platform_bus = events.EventBus.from_event_bus_name(
            self, "PlatformBus", self._import(bus, bus.event_bus_name, "BusName")
        )
        resources = SharedResources(
            model_bucket=self.bucket,
            registry_table=self.registry_table,
            queue_key=key,
            tables=tables,
            table_names={name: table.table_name for name, table in tables.items()},
            buses={
                PLATFORM_BUS: platform_bus,
                DEFAULT_BUS: events.EventBus.from_event_bus_name(self, "DefaultBus", DEFAULT_BUS),
            },
        )
        fn = ServiceFunction(
            self,
            pascal(spec.name),
            spec=spec,
            functions_dir=functions_dir,
            layers=layers,
            resources=resources,
            model_versions={},
            settings=FunctionSettings(log_level=config.log_level, log_retention=self._retention),
        )
        FunctionAlarms(
            fn, "Alarms", spec=spec, alias=fn.alias, topic=alarm_topic(self, "AlarmTopic", key=key)
        )
        fn.function.add_environment(CONFIG_ENV, retrain.model_dump_json())
        fn.function.add_environment(
            "TRAINING_STATE_MACHINE_ARN_PREFIX",
            self.format_arn(
                service="states",
                resource="stateMachine",
                resource_name=STATE_MACHINE_PREFIX,
                arn_format=cdk.ArnFormat.COLON_RESOURCE_NAME,
            ),
        )
        for model in sorted(retrain.models):
            self.state_machines[model].grant_start_execution(fn.role)
        return fn

    # --- cross-stack references -------------------------------------------------------------

    def _import(self, owner: IConstruct, value: str, name: str) -> str:
        """Another stack's attribute through an export named `<stack>-<name>` (the names
        the service group stacks import too: one export each)."""
        producer = cdk.Stack.of(owner)
        if producer is self:
            return value
        self.add_stack_dependency(producer)
        export = f"{producer.stack_name}-{name}"
        if producer.node.try_find_child(f"Export{export}") is not None:  # exported already
            return cdk.Fn.import_value(export)
        return producer.export_value(value, name=export)

    # --- roles --------------------------------------------------------------------------------

    def _job_role(self, models: list[str], source: s3_assets.Asset) -> iam.Role:
        """What a training job may do: read its source and channel, write its output, log."""
        role = iam.Role(
            self,
            "JobRole",
            assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
            description="SageMaker training jobs of the aibackend training pipelines",
        )
        channels = [self.bucket.arn_for_objects(f"{TRAINING_DATA_PREFIX}/{m}/*") for m in models]
        outputs = [self.bucket.arn_for_objects(f"{RUNS_PREFIX}/{m}/*") for m in models]
        role.add_to_principal_policy(
            iam.PolicyStatement(actions=["s3:GetObject"], resources=channels)
        )
        role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["s3:ListBucket"],
                resources=[self.bucket.bucket_arn],
                conditions={
                    "StringLike": {"s3:prefix": [f"{TRAINING_DATA_PREFIX}/{m}/*" for m in models]}
                },
            )
        )
        role.add_to_principal_policy(
            iam.PolicyStatement(actions=["s3:PutObject"], resources=outputs)
        )
        # The one source archive, not CDK's read grant on the whole assets bucket.
        role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["s3:GetObject"],
                resources=[source.bucket.arn_for_objects(source.s3_object_key)],
            )
        )
        if self.model_key is not None:
            role.add_to_principal_policy(
                iam.PolicyStatement(
                    actions=["kms:Decrypt", "kms:GenerateDataKey"],
                    resources=[self.model_key.key_arn],
                )
            )
        log_arn = cdk.Stack.of(self).format_arn(
            service="logs",
            resource="log-group",
            resource_name="/aws/sagemaker/TrainingJobs:*",
            arn_format=cdk.ArnFormat.COLON_RESOURCE_NAME,
        )
        role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["logs:CreateLogStream", "logs:PutLogEvents", "logs:CreateLogGroup"],
                resources=[log_arn],
            )
        )
        # Pulling the framework image (AWS's account) or your own (ECR): the token call has
        # no resource; image reads are limited to ECR repositories.
        role.add_to_principal_policy(
            iam.PolicyStatement(actions=["ecr:GetAuthorizationToken"], resources=["*"])
        )
        role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"],
                resources=[f"arn:{cdk.Aws.PARTITION}:ecr:{cdk.Aws.REGION}:*:repository/*"],
            )
        )
        policy = role.node.find_child("DefaultPolicy")
        for arn in channels + outputs:
            acknowledge(
                policy,
                "IAM5",
                "A training job reads its model's training-data/<model>/ files and writes "
                "its run under training/<model>/: one prefix per trainable model.",
                finding=resource_finding(policy, arn),
            )
        acknowledge(
            policy,
            "IAM5",
            "SageMaker names the log streams of a training job after the job; the group is "
            "SageMaker's fixed /aws/sagemaker/TrainingJobs.",
            finding=resource_finding(policy, log_arn),
        )
        acknowledge(
            policy,
            "IAM5",
            "ecr:GetAuthorizationToken has no resource-level permissions (AWS documents '*').",
            finding="Resource::*",
        )
        acknowledge(
            policy,
            "IAM5",
            "The training image is AWS's framework container (AWS's account) or a declared "
            "image URI: pulls are limited to ECR repositories of this region.",
            finding=resource_finding(
                policy, f"arn:{cdk.Aws.PARTITION}:ecr:{cdk.Aws.REGION}:*:repository/*"
            ),
        )
        return role

    def _step_function(
        self, scope: Construct, construct_id: str, name: str, code: lambda_.Code, layers: Layers
    ) -> lambda_.Function:
        log_group = logs.LogGroup(
            scope,
            f"{construct_id}Logs",
            retention=self._retention,
            removal_policy=cdk.RemovalPolicy.DESTROY,
        )
        role = iam.Role(
            scope,
            f"{construct_id}Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"training pipeline step {name}",
        )
        log_group.grant_write(role)
        fn = lambda_.Function(
            scope,
            construct_id,
            description=f"Training pipeline: {name} (gate and registry; numpy + onnxruntime)",
            runtime=lambda_.Runtime.PYTHON_3_12,
            architecture=lambda_.Architecture.ARM_64,
            # The holdout of 500k fraud rows and two ONNX sessions: memory is also CPU.
            memory_size=3008,
            timeout=cdk.Duration.minutes(15),
            ephemeral_storage_size=cdk.Size.gibibytes(2),
            handler=f"aibackend.training.pipeline_lambda.{name}",
            code=code,
            layers=[layers.api(PLATFORM), layers.ml(PLATFORM)],
            environment={
                "AIB_ADAPTERS": "aws",
                "AIB_MODEL_BUCKET": self.bucket.bucket_name,
                "AIB_REGISTRY_TABLE": self.registry_table.table_name,
                "POWERTOOLS_SERVICE_NAME": f"training-{name}",
            },
            log_group=log_group,
            tracing=lambda_.Tracing.ACTIVE,
            role=role,
        )
        acknowledge(
            role.node.find_child("DefaultPolicy"),
            "IAM5",
            "X-Ray PutTraceSegments/PutTelemetryRecords support no resource-level permissions; "
            "CDK adds them for active tracing.",
            finding="Resource::*",
        )
        acknowledge(
            fn,
            "L1",
            f"The {name} step runs {PLATFORM.runtime}, the runtime the functions' api and ml "
            "layers are built for (datasketches publishes no wheels for newer Pythons yet).",
        )
        return fn

    def _grant_steps(self, models: list[str]) -> None:
        """Evaluate reads; register also writes the registry and the versions' artifacts."""
        runs = [self.bucket.arn_for_objects(f"{RUNS_PREFIX}/{m}/*") for m in models]
        channels = [self.bucket.arn_for_objects(f"{TRAINING_DATA_PREFIX}/{m}/*") for m in models]
        versions = [self.bucket.arn_for_objects(f"{m}/*") for m in models]
        read_registry = iam.PolicyStatement(
            actions=["dynamodb:GetItem", "dynamodb:Query"],
            resources=[self.registry_table.table_arn],
            conditions={"ForAllValues:StringEquals": {"dynamodb:LeadingKeys": models}},
        )
        for fn in (self.evaluate, self.register):
            fn.add_to_role_policy(read_registry)
            fn.add_to_role_policy(
                iam.PolicyStatement(actions=["s3:GetObject"], resources=runs + versions)
            )
        self.evaluate.add_to_role_policy(
            iam.PolicyStatement(actions=["s3:GetObject"], resources=channels)
        )
        self.evaluate.add_to_role_policy(
            iam.PolicyStatement(
                actions=["s3:ListBucket"],
                resources=[self.bucket.bucket_arn],
                conditions={
                    "StringLike": {"s3:prefix": [f"{TRAINING_DATA_PREFIX}/{m}/*" for m in models]}
                },
            )
        )
        self.register.add_to_role_policy(
            iam.PolicyStatement(
                actions=["dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:ConditionCheckItem"],
                resources=[self.registry_table.table_arn],
                conditions={"ForAllValues:StringEquals": {"dynamodb:LeadingKeys": models}},
            )
        )
        self.register.add_to_role_policy(
            iam.PolicyStatement(actions=["s3:PutObject", "s3:DeleteObject"], resources=versions)
        )
        if self.model_key is not None:
            self.evaluate.add_to_role_policy(
                iam.PolicyStatement(actions=["kms:Decrypt"], resources=[self.model_key.key_arn])
            )
            self.register.add_to_role_policy(
                iam.PolicyStatement(
                    actions=["kms:Decrypt", "kms:GenerateDataKey"],
                    resources=[self.model_key.key_arn],
                )
            )
        for fn in (self.evaluate, self.register):
            policy = fn.role.node.find_child("DefaultPolicy")  # type: ignore[union-attr]
            for arn in runs + versions + (channels if fn is self.evaluate else []):
                acknowledge(
                    policy,
                    "IAM5",
                    "Training runs (training/<model>/), channels (training-data/<model>/) "
                    "and model versions (<model>/<version>/) are per-model prefixes of the "
                    "model bucket: access is limited to the trainable models' prefixes.",
                    finding=resource_finding(policy, arn),
                )

    # --- the state machine ------------------------------------------------------------------

    def _state_machine(
        self, spec: PipelineSpec, gate: GateConfig, source: s3_assets.Asset
    ) -> sfn.StateMachine:
        model = spec.model
        scope = Construct(self, pascal(model))
        failed = sfn.Fail(scope, "Failed", error_path="$.error.Error", cause_path="$.error.Cause")
        prepare = sfn.Pass(
            scope,
            "Prepare",
            comment="The run's inputs and outputs: the train channel and the job's name.",
            parameters={
                "model": model,
                "channel": f"s3://{self.bucket.bucket_name}/{TRAINING_DATA_PREFIX}/{model}/",
                "output": f"s3://{self.bucket.bucket_name}/{RUNS_PREFIX}/{model}/",
                "job.$": "States.Format('aib-{}', States.UUID())",
                "cause.$": "$",
            },
            result_path="$.prepare",
        )
        train = self._training_job(scope, spec, source)
        artifact = "$.training.ModelArtifacts.S3ModelArtifacts"
        evaluate = tasks.LambdaInvoke(
            scope,
            "Evaluate",
            lambda_function=self.evaluate,
            payload=sfn.TaskInput.from_object(
                {
                    "model": model,
                    "artifact": sfn.JsonPath.string_at(artifact),
                    "channel": sfn.JsonPath.string_at("$.prepare.channel"),
                    "gate": gate.model_dump(mode="json"),
                }
            ),
            result_selector={
                "approved.$": "$.Payload.approved",
                "failed.$": "$.Payload.failed",
                "verdict.$": "$.Payload.verdict",
            },
            result_path="$.evaluation",
        )
        register_payload = sfn.TaskInput.from_object(
            {
                "model": model,
                "artifact": sfn.JsonPath.string_at(artifact),
                "evaluation": sfn.JsonPath.object_at("$.evaluation"),
            }
        )

        def invoke_register(task_id: str) -> tasks.LambdaInvoke:
            """The register function: after a passed gate it registers, after a failed one it
            records the rejection (the evaluation it is given says which)."""
            return tasks.LambdaInvoke(
                scope,
                task_id,
                lambda_function=self.register,
                payload=register_payload,
                result_selector={"version.$": "$.Payload.version", "stage.$": "$.Payload.stage"},
                result_path="$.registered",
            )

        register = invoke_register("Register")
        record_rejection = invoke_register("RecordRejection")
        for task in (train, evaluate, register, record_rejection):
            task.add_catch(failed, errors=["States.ALL"], result_path="$.error")
        for task in (evaluate, register, record_rejection):
            task.add_retry(
                errors=["Lambda.TooManyRequestsException"],
                interval=cdk.Duration.seconds(5),
                max_attempts=4,
                backoff_rate=2,
            )
        rejected = sfn.Fail(
            scope,
            "GateRejected",
            error="GateRejected",
            cause=f"the validation gate rejected the {model} candidate: see its gate evidence "
            f"(`aib models show {model}`)",
        )
        gate_choice = (
            sfn.Choice(scope, "Gate", comment="approved unless a check failed")
            .when(
                sfn.Condition.boolean_equals("$.evaluation.approved", True),
                register.next(sfn.Succeed(scope, "Registered")),
            )
            .otherwise(record_rejection.next(rejected))
        )
        definition = prepare.next(train).next(evaluate).next(gate_choice)
        log_group = logs.LogGroup(
            scope, "Logs", retention=self._retention, removal_policy=cdk.RemovalPolicy.DESTROY
        )
        machine = sfn.StateMachine(
            scope,
            "StateMachine",
            state_machine_name=f"{STATE_MACHINE_PREFIX}{model}",
            definition_body=sfn.DefinitionBody.from_chainable(definition),
            timeout=cdk.Duration.seconds(spec.max_runtime_s + 3600),
            tracing_enabled=True,
            logs=sfn.LogOptions(destination=log_group, level=sfn.LogLevel.ALL),
        )
        self._acknowledge_machine_role(machine)
        # CDK makes the machine depend on its role construct (for the role's policy); the
        # role's half duplicates the RoleArn GetAtt (cfn-lint W3005): keep the policy's.
        cfn = machine.node.default_child
        policy = machine.role.node.find_child("DefaultPolicy").node.default_child
        assert isinstance(cfn, cdk.CfnResource) and isinstance(policy, cdk.CfnResource)
        cfn.add_override("DependsOn", [self.get_logical_id(policy)])
        return machine

    def _acknowledge_machine_role(self, machine: sfn.StateMachine) -> None:
        """The wildcards CDK's Step Functions integrations put on the machine's role."""
        policy = machine.role.node.find_child("DefaultPolicy")
        acknowledge(
            policy,
            "IAM5",
            "X-Ray tracing and CloudWatch Logs delivery (logs:CreateLogDelivery and the "
            "other log-delivery actions) support no resource-level permissions.",
            finding="Resource::*",
        )
        acknowledge(
            policy,
            "IAM5",
            "Each run's training job has a generated name (aib-<uuid>); CDK's RUN_JOB "
            "integration grants Create/Describe/Stop/AddTags on training jobs by that pattern.",
            finding=resource_finding(
                policy,
                self.format_arn(service="sagemaker", resource="training-job", resource_name="*"),
            ),
        )
        for fn in (self.evaluate, self.register):
            acknowledge(
                policy,
                "IAM5",
                "CDK's LambdaInvoke grants invoking the step function and its versions "
                "(<arn>:*); the state machine invokes the unqualified function.",
                finding=resource_finding(policy, f"{fn.function_arn}:*"),
            )

    def _training_job(
        self, scope: Construct, spec: PipelineSpec, source: s3_assets.Asset
    ) -> tasks.SageMakerCreateTrainingJob:
        hyperparameters = {k: str(v) for k, v in spec.hyperparameters.items()}
        if spec.framework:
            hyperparameters.update(
                {
                    "sagemaker_program": program_name(spec.model),
                    "sagemaker_submit_directory": source.s3_object_url,
                    "sagemaker_region": cdk.Aws.REGION,
                }
            )
        return tasks.SageMakerCreateTrainingJob(
            scope,
            "Train",
            integration_pattern=sfn.IntegrationPattern.RUN_JOB,
            training_job_name=sfn.JsonPath.string_at("$.prepare.job"),
            role=self.job_role,
            algorithm_specification=tasks.AlgorithmSpecification(
                training_image=tasks.DockerImage.from_registry(framework_image(spec)),
                training_input_mode=tasks.InputMode.FILE,
            ),
            input_data_config=[
                tasks.Channel(
                    channel_name="train",
                    data_source=tasks.DataSource(
                        s3_data_source=tasks.S3DataSource(
                            s3_location=tasks.S3Location.from_json_expression("$.prepare.channel"),
                            s3_data_type=tasks.S3DataType.S3_PREFIX,
                        )
                    ),
                )
            ],
            output_data_config=tasks.OutputDataConfig(
                # A path, not `from_bucket`: its grant would add CDK's write set (s3:Abort*,
                # s3:DeleteObject*, kms:ReEncrypt*) on the whole bucket; the job role's own
                # statements allow writing this model's runs only.
                s3_output_location=tasks.S3Location.from_json_expression("$.prepare.output"),
                # No key here: CDK would grant its whole encrypt-decrypt set. The bucket's
                # default encryption (AibModels' key) applies; the job role may use that key.
            ),
            resource_config=tasks.ResourceConfig(
                instance_count=spec.instance_count,
                instance_type=ec2.InstanceType(spec.instance_type.removeprefix("ml.")),
                volume_size=cdk.Size.gibibytes(spec.volume_gb),
            ),
            stopping_condition=tasks.StoppingCondition(
                max_runtime=cdk.Duration.seconds(spec.max_runtime_s)
            ),
            hyperparameters=hyperparameters,
            result_selector={"ModelArtifacts.$": "$.ModelArtifacts"},
            result_path="$.training",
        )
