"""The models the Replicate fake serves, their fields copied from replicate.com.

Owns ``MODELS`` (by ``owner/name``): FLUX 1.1 Pro, FLUX Schnell, Ideogram v2, Seedream 3,
FLUX Kontext Pro, Real-ESRGAN (a community model: only the version endpoint runs it) and
Kling v2.1 (image to video), each a ``FakeModel`` with its Cog schema and size plan.
"""

from __future__ import annotations

import hashlib

from fakes.replicate_models import (
    SEED,
    URI_LIST_OUTPUT,
    URI_OUTPUT,
    FakeModel,
    cog_field,
    cog_openapi,
    plan_esrgan,
    plan_flux_pro,
    plan_flux_schnell,
    plan_ideogram,
    plan_kling,
    plan_kontext,
    plan_seedream,
)


def _words(text: str) -> list[str]:
    return text.split()


FLUX_PRO_RATIOS = _words("custom 1:1 16:9 3:2 2:3 4:5 5:4 9:16 3:4 4:3")
FLUX_SCHNELL_RATIOS = _words("1:1 16:9 21:9 3:2 2:3 4:5 5:4 3:4 4:3 9:16 9:21")
IDEOGRAM_RATIOS = _words("1:1 16:9 9:16 4:3 3:4 3:2 2:3 16:10 10:16 3:1 1:3")
# Ideogram's fixed resolutions ("None": use aspect_ratio), as listed on replicate.com.
_IDEOGRAM_SIZES = (
    "512x1536 576x1408 576x1472 576x1536 640x1344 640x1408 640x1472 640x1536 704x1152 "
    "704x1216 704x1280 704x1344 704x1408 704x1472 736x1312 768x1088 768x1216 768x1280 "
    "768x1344 800x1280 832x960 832x1024 832x1088 832x1152 832x1216 832x1248 864x1152 "
    "896x960 896x1024 896x1088 896x1120 896x1152 960x832 960x896 960x1024 960x1088 "
    "1024x832 1024x896 1024x960 1024x1024 1088x768 1088x832 1088x896 1088x960 1120x896 "
    "1152x704 1152x832 1152x864 1152x896 1216x704 1216x768 1216x832 1248x832 1280x704 "
    "1280x768 1280x800 1312x736 1344x640 1344x704 1344x768 1408x576 1408x640 1408x704 "
    "1472x576 1472x640 1472x704 1536x512 1536x576 1536x640"
)
IDEOGRAM_RESOLUTIONS = ["None", *_words(_IDEOGRAM_SIZES)]
SEEDREAM_RATIOS = _words("1:1 3:4 4:3 16:9 9:16 2:3 3:2 21:9 custom")
KONTEXT_RATIOS = _words("match_input_image 1:1 16:9 9:16 4:3 3:4 3:2 2:3 4:5 5:4 21:9 9:21 2:1 1:2")
QUALITY = "Quality when saving the output images, from 0 to 100. 100 is best quality, 0 is "
QUALITY += "lowest quality. Not relevant for .png outputs"


def _catalogue() -> dict[str, FakeModel]:
    """The models, their fields copied from their API pages on replicate.com.

    Version ids are real ones except kling's; ``cog_version`` and ``created_at`` are
    plausible stand-ins. Descriptions of fields are the real ones.
    """
    side = "{} of the generated image in text-to-image mode. Only used when aspect_ratio="
    side += "custom. Must be a multiple of 32 (if it's not, it will be rounded to nearest "
    side += "multiple of 32). Note: Ignored in img2img and inpainting modes."
    flux_pro = cog_openapi(
        {
            "prompt": cog_field(0, "Text prompt for image generation", type="string"),
            "image_prompt": cog_field(
                1,
                "Image to use with Flux Redux. This is used together with the text prompt to "
                "guide the generation towards the composition of the image_prompt. Must be "
                "jpeg, png, gif, or webp.",
                type="string",
                format="uri",
            ),
            "aspect_ratio": cog_field(
                2,
                "Aspect ratio for the generated image",
                type="string",
                enum=FLUX_PRO_RATIOS,
                default="1:1",
            ),
            "width": cog_field(3, side.format("Width"), type="integer", minimum=256, maximum=1440),
            "height": cog_field(
                4, side.format("Height"), type="integer", minimum=256, maximum=1440
            ),
            "safety_tolerance": cog_field(
                5,
                "Safety tolerance, 1 is most strict and 6 is most permissive",
                type="integer",
                default=2,
                minimum=1,
                maximum=6,
            ),
            "seed": {**SEED, "x-order": 6},
            "prompt_upsampling": cog_field(
                7,
                "Automatically modify the prompt for more creative generation",
                type="boolean",
                default=False,
            ),
            "output_format": cog_field(
                8,
                "Format of the output images.",
                type="string",
                enum=["webp", "jpg", "png"],
                default="webp",
            ),
            "output_quality": cog_field(
                9, QUALITY, type="integer", default=80, minimum=0, maximum=100
            ),
        },
        ["prompt"],
        URI_OUTPUT,
        enums_by_ref=False,
    )
    flux_schnell = cog_openapi(
        {
            "prompt": cog_field(0, "Prompt for generated image", type="string"),
            "aspect_ratio": cog_field(
                1,
                "Aspect ratio for the generated image",
                type="string",
                enum=FLUX_SCHNELL_RATIOS,
                default="1:1",
            ),
            "num_outputs": cog_field(
                2,
                "Number of outputs to generate",
                type="integer",
                default=1,
                minimum=1,
                maximum=4,
            ),
            "num_inference_steps": cog_field(
                3,
                "Number of denoising steps. 4 is recommended, and lower number of steps "
                "produce lower quality outputs, faster.",
                type="integer",
                default=4,
                minimum=1,
                maximum=4,
            ),
            "seed": {**SEED, "x-order": 4},
            "output_format": cog_field(
                5,
                "Format of the output images",
                type="string",
                enum=["webp", "jpg", "png"],
                default="webp",
            ),
            "output_quality": cog_field(
                6, QUALITY, type="integer", default=80, minimum=0, maximum=100
            ),
            "disable_safety_checker": cog_field(
                7, "Disable safety checker for generated images.", type="boolean", default=False
            ),
            "go_fast": cog_field(
                8,
                "Run faster predictions with model optimized for speed (currently fp8 "
                "quantized); disable to run in original bf16. Note that outputs will not be "
                "deterministic when this is enabled, even if you set a seed.",
                type="boolean",
                default=True,
            ),
            "megapixels": cog_field(
                9,
                "Approximate number of megapixels for generated image",
                type="string",
                enum=["1", "0.25"],
                default="1",
            ),
        },
        ["prompt"],
        URI_LIST_OUTPUT,
        enums_by_ref=True,
    )
    ideogram = cog_openapi(
        {
            "prompt": cog_field(0, "Text prompt for image generation", type="string"),
            "negative_prompt": cog_field(
                1, "Things you do not want to see in the generated image.", type="string"
            ),
            "aspect_ratio": cog_field(
                2,
                "Aspect ratio. Ignored if a resolution or inpainting image is given.",
                type="string",
                enum=IDEOGRAM_RATIOS,
                default="1:1",
            ),
            "resolution": cog_field(
                3,
                "Resolution. Overrides aspect ratio. Ignored if an inpainting image is given.",
                type="string",
                enum=IDEOGRAM_RESOLUTIONS,
                default="None",
            ),
            "magic_prompt_option": cog_field(
                4,
                "Magic Prompt will interpret your prompt and optimize it to maximize variety "
                "and quality of the images generated. You can also use it to write prompts in "
                "different languages.",
                type="string",
                enum=["Auto", "On", "Off"],
                default="Auto",
            ),
            "image": cog_field(
                5, "An image file to use for inpainting.", type="string", format="uri"
            ),
            "mask": cog_field(
                6,
                "A black and white image. Black pixels are inpainted, white pixels are "
                "preserved. The mask will be resized to match the image size.",
                type="string",
                format="uri",
            ),
            "style_type": cog_field(
                7,
                "The styles help define the specific aesthetic of the image you want to generate.",
                type="string",
                enum=["None", "Auto", "General", "Realistic", "Design", "Render 3D", "Anime"],
                default="None",
            ),
            "seed": {**SEED, "x-order": 8, "maximum": 2147483647},
        },
        ["prompt"],
        URI_OUTPUT,
        enums_by_ref=True,
    )
    seedream = cog_openapi(
        {
            "prompt": cog_field(0, "Text prompt for image generation", type="string"),
            "seed": {**SEED, "x-order": 1},
            "aspect_ratio": cog_field(
                2,
                "Image aspect ratio. Set to 'custom' to specify width and height.",
                type="string",
                enum=SEEDREAM_RATIOS,
                default="16:9",
            ),
            "size": cog_field(
                3,
                "Big images will have their longest dimension be 2048px. Small images will "
                "have their shortest dimension be 512px. Regular images will always be 1 "
                "megapixel. Ignored if aspect ratio is custom.",
                type="string",
                enum=["small", "regular", "big"],
                default="regular",
            ),
            "width": cog_field(
                4, "Image width", type="integer", default=2048, minimum=512, maximum=2048
            ),
            "height": cog_field(
                5, "Image height", type="integer", default=2048, minimum=512, maximum=2048
            ),
            "guidance_scale": cog_field(
                6,
                "Prompt adherence. Higher = more literal.",
                type="number",
                default=2.5,
                minimum=1,
                maximum=10,
            ),
        },
        ["prompt"],
        URI_OUTPUT,
        enums_by_ref=True,
    )
    kontext = cog_openapi(
        {
            "prompt": cog_field(
                0,
                "Text description of what you want to generate, or the instruction on how to "
                "edit the given image.",
                type="string",
            ),
            "input_image": cog_field(
                1,
                "Image to use as reference. Must be jpeg, png, gif, or webp.",
                type="string",
                format="uri",
            ),
            "aspect_ratio": cog_field(
                2,
                "Aspect ratio of the generated image. Use 'match_input_image' to match the "
                "aspect ratio of the input image.",
                type="string",
                enum=KONTEXT_RATIOS,
                default="match_input_image",
            ),
            "prompt_upsampling": cog_field(
                3, "Automatic prompt improvement", type="boolean", default=False
            ),
            "seed": {**SEED, "x-order": 4},
            "output_format": cog_field(
                5,
                "Output format for the generated image",
                type="string",
                enum=["jpg", "png"],
                default="png",
            ),
            "safety_tolerance": cog_field(
                6,
                "Safety tolerance, 0 is most strict and 6 is most permissive. 2 is currently "
                "the maximum allowed when input images are used.",
                type="integer",
                default=2,
                minimum=0,
                maximum=6,
            ),
        },
        ["prompt"],
        URI_OUTPUT,
        enums_by_ref=True,
    )
    esrgan = cog_openapi(
        {
            "image": cog_field(0, "Input image", type="string", format="uri"),
            "scale": cog_field(
                1, "Factor to scale image by", type="number", default=4, minimum=0, maximum=10
            ),
            "face_enhance": cog_field(
                2,
                "Run GFPGAN face enhancement along with upscaling",
                type="boolean",
                default=False,
            ),
        },
        ["image"],
        URI_OUTPUT,
        enums_by_ref=False,
    )
    kling = cog_openapi(
        {
            "prompt": cog_field(0, "Text prompt for video generation", type="string"),
            "negative_prompt": cog_field(
                1, "Things you do not want to see in the video", type="string", default=""
            ),
            "start_image": cog_field(2, "First frame of the video", type="string", format="uri"),
            "end_image": cog_field(
                3, "Last frame of the video (pro mode only)", type="string", format="uri"
            ),
            "mode": cog_field(
                4,
                "Standard has a resolution of 720p, pro is 1080p. Both are 24fps.",
                type="string",
                enum=["standard", "pro"],
                default="standard",
            ),
            "duration": cog_field(
                5,
                "Duration of the video in seconds",
                type="integer",
                enum=[5, 10],
                default=5,
            ),
        },
        ["prompt", "start_image"],
        URI_OUTPUT,
        enums_by_ref=True,
    )
    models = [
        FakeModel(
            "black-forest-labs",
            "flux-1.1-pro",
            "96ccd0e758a1796926584ded2246369cdf8eb3d7c34475cf9c442be5e097d926",
            True,
            "Faster, better FLUX Pro. Text-to-image model with excellent image quality, "
            "prompt adherence, and output diversity.",
            52_000_000,
            "0.9.4+dev",
            "2024-11-21T17:07:13.102536Z",
            flux_pro,
            plan_flux_pro,
        ),
        FakeModel(
            "black-forest-labs",
            "flux-schnell",
            "c846a69991daf4c0e5d016514849d14ee5b2e6846ce6b9d6f21369e564cfe51e",
            True,
            "The fastest image generation model tailored for local development and personal use",
            520_500_000,
            "0.15.8",
            "2025-06-25T19:38:28.174390Z",
            flux_schnell,
            plan_flux_schnell,
        ),
        FakeModel(
            "ideogram-ai",
            "ideogram-v2",
            "d07f7f3ad03f2ec100edeaa91e26ac731d7d00ec369e6a475b80c04bd1101d5d",
            True,
            "An excellent image model with state of the art inpainting, prompt comprehension "
            "and text rendering",
            2_100_000,
            "0.9.25",
            "2024-11-01T12:00:00.000000Z",
            ideogram,
            plan_ideogram,
        ),
        FakeModel(
            "bytedance",
            "seedream-3",
            "ed344813bc9f4996be6de4febd8b9c14c7849ad7b21ab047572e3620ee374ee7",
            True,
            "A text-to-image model with support for native high-resolution (2K) image generation",
            3_400_000,
            "0.14.3",
            "2025-06-10T12:00:00.000000Z",
            seedream,
            plan_seedream,
        ),
        FakeModel(
            "black-forest-labs",
            "flux-kontext-pro",
            "569705b35f79b1160d51de1d0e3955626af86c77a034a16e89010dbdde5ad312",
            True,
            "A state-of-the-art text-based image editing model that delivers high-quality "
            "outputs with excellent prompt following and consistent results",
            33_000_000,
            "0.15.2",
            "2025-06-20T12:00:00.000000Z",
            kontext,
            plan_kontext,
            source_field="input_image",
        ),
        FakeModel(
            "nightmareai",
            "real-esrgan",
            "42fed1c4974146d4d4414e2be2c5277c7fcf05fde3b22e94cee859b8a4a39d44",
            False,  # a community model: only the version endpoint runs it
            "Real-ESRGAN with optional face correction and adjustable upscale",
            70_000_000,
            "0.4.4",
            "2023-09-12T18:14:34.345281Z",
            esrgan,
            plan_esrgan,
            source_field="image",
        ),
        FakeModel(
            "kwaivgi",
            "kling-v2.1",
            hashlib.sha256(b"kwaivgi/kling-v2.1").hexdigest(),  # a placeholder: id not found
            True,
            "Use Kling v2.1 to generate 5s and 10s videos in 720p and 1080p resolution from a "
            "starting image (image-to-video)",
            2_300_000,
            "0.14.10",
            "2025-06-18T12:00:00.000000Z",
            kling,
            plan_kling,
            source_field="start_image",
        ),
    ]
    return {model.ref: model for model in models}


MODELS: dict[str, FakeModel] = _catalogue()
