"""Cross-stack references through named exports `<producer stack>-<name>`.

Named exports, unlike CDK's generated `ExportsOutput...<hash>` ones, survive construct
refactoring (a renamed export that is in use blocks a deployment) and give stable cdk-nag
finding ids. Every consumer of one value shares one export.
"""

from __future__ import annotations

import aws_cdk as cdk
from constructs import IConstruct


def import_value(consumer: cdk.Stack, owner: IConstruct, value: str, name: str) -> str:
    """`value` (an attribute of `owner`) as `consumer` sees it: itself within one stack, else
    an import of the producer's export `<producer>-<name>`, which orders the producer first."""
    producer = cdk.Stack.of(owner)
    if producer is consumer:
        return value
    consumer.add_stack_dependency(producer)  # an import by name carries no dependency by itself
    export = f"{producer.stack_name}-{name}"
    if producer.node.try_find_child(f"Export{export}") is not None:  # another consumer made it
        return cdk.Fn.import_value(export)
    return producer.export_value(value, name=export)
